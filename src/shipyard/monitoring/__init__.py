"""The monitoring engine: reports over the prediction log and batch outputs, results, alerts."""
