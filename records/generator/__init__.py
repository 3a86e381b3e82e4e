"""Synthetic province generator: realistic, deterministic record tables for tests and demos.

``generate_province`` builds every table of :mod:`records.tables` for a province of a given
size; ``to_file_frame`` renders a table as the strings a reporter writes; ``inject_faults``
appends faulty rows with their expected ingestion outcome; ``write_files`` writes one CSV or
Parquet file per table plus ``manifest.json``.
"""

from records.generator.faults import FAULT_KINDS, InjectedFault, inject_faults
from records.generator.files import to_file_frame, write_files
from records.generator.params import ProvinceParams
from records.generator.province import generate_province

__all__ = [
    "FAULT_KINDS",
    "InjectedFault",
    "ProvinceParams",
    "generate_province",
    "inject_faults",
    "to_file_frame",
    "write_files",
]
