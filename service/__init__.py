"""The service layer: the CLI now; gRPC servicers, interceptors and the batch job later.

The only package that may import every other one (records ← features ← models ← audit ← service).
"""
