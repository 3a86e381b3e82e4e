"""Administrative division codes of the PRC (GB/T 2260) used to validate identifiers.

``PROVINCE_CODES`` is the complete list of province-level divisions (the first two digits of
every county-level code).  ``DISTRICT_CODES`` is a small curated list of real county-level
codes, mostly in Zhejiang, used by the synthetic province generator and by tests.  Which
province counts as "home" is a configuration decision and is deliberately not fixed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

PROVINCE_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "11": "Beijing",
        "12": "Tianjin",
        "13": "Hebei",
        "14": "Shanxi",
        "15": "Inner Mongolia",
        "21": "Liaoning",
        "22": "Jilin",
        "23": "Heilongjiang",
        "31": "Shanghai",
        "32": "Jiangsu",
        "33": "Zhejiang",
        "34": "Anhui",
        "35": "Fujian",
        "36": "Jiangxi",
        "37": "Shandong",
        "41": "Henan",
        "42": "Hubei",
        "43": "Hunan",
        "44": "Guangdong",
        "45": "Guangxi",
        "46": "Hainan",
        "50": "Chongqing",
        "51": "Sichuan",
        "52": "Guizhou",
        "53": "Yunnan",
        "54": "Tibet",
        "61": "Shaanxi",
        "62": "Gansu",
        "63": "Qinghai",
        "64": "Ningxia",
        "65": "Xinjiang",
        "71": "Taiwan",
        "81": "Hong Kong",
        "82": "Macao",
    }
)

DISTRICT_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # Zhejiang (33): Hangzhou
        "330102": "Shangcheng, Hangzhou",
        "330105": "Gongshu, Hangzhou",
        "330106": "Xihu, Hangzhou",
        "330108": "Binjiang, Hangzhou",
        "330109": "Xiaoshan, Hangzhou",
        "330110": "Yuhang, Hangzhou",
        "330111": "Fuyang, Hangzhou",
        "330122": "Tonglu, Hangzhou",
        # Ningbo
        "330203": "Haishu, Ningbo",
        "330206": "Beilun, Ningbo",
        "330212": "Yinzhou, Ningbo",
        "330281": "Yuyao, Ningbo",
        "330282": "Cixi, Ningbo",
        # Wenzhou
        "330302": "Lucheng, Wenzhou",
        "330381": "Rui'an, Wenzhou",
        "330382": "Yueqing, Wenzhou",
        # Jiaxing
        "330402": "Nanhu, Jiaxing",
        "330481": "Haining, Jiaxing",
        # Huzhou
        "330502": "Wuxing, Huzhou",
        # Shaoxing
        "330602": "Yuecheng, Shaoxing",
        "330681": "Zhuji, Shaoxing",
        # Jinhua
        "330702": "Wucheng, Jinhua",
        "330782": "Yiwu, Jinhua",
        "330783": "Dongyang, Jinhua",
        # Quzhou, Zhoushan, Taizhou, Lishui
        "330802": "Kecheng, Quzhou",
        "330902": "Dinghai, Zhoushan",
        "331002": "Jiaojiang, Taizhou",
        "331081": "Wenling, Taizhou",
        "331102": "Liandu, Lishui",
        # Other provinces
        "110105": "Chaoyang, Beijing",
        "110108": "Haidian, Beijing",
        "310115": "Pudong New Area, Shanghai",
        "320106": "Gulou, Nanjing",
        "340104": "Shushan, Hefei",
        "350203": "Siming, Xiamen",
        "360102": "Donghu, Nanchang",
        "370102": "Lixia, Jinan",
        "410105": "Jinshui, Zhengzhou",
        "420106": "Wuchang, Wuhan",
        "440106": "Tianhe, Guangzhou",
        "440305": "Nanshan, Shenzhen",
        "510107": "Wuhou, Chengdu",
    }
)


def is_province_code(code2: str) -> bool:
    """Return True iff ``code2`` is a two-digit province-level division code (e.g. ``"33"``)."""
    return code2 in PROVINCE_CODES
