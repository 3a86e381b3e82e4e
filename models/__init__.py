"""Risk models: training, calibration, scorecard points, reason codes, registry (see issue: model)."""
