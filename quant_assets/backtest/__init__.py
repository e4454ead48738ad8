"""The backtest: a numba kernel over (dates × tickers) arrays, the frame-facing book around it,
performance metrics, overfitting statistics and the HTML report. Pure domain code."""
