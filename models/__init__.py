"""Risk models: training, calibration, scorecard points, reason codes, the registry."""
