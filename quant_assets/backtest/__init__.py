"""The backtest: the accounting core (``kernel``: ONE numba order step — decide at the close,
fill the next session with costs, mark — that the simulated book and the paper book in
:mod:`quant_assets.execution` both run), the frame-facing book around it (``book``, with the
frame helpers both books share in ``frames``), performance metrics, overfitting statistics
and the HTML report. Pure domain code."""
