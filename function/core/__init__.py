"""The core, with no web types: the request and prediction types and the pipeline — admission, the source fetch,
decoding, the model's queue, encoding — shared by every dialect."""
