"""The model side: weights (local, https, Cloud Storage), the loaded model and its replicas, the owner threads that
batch jobs, and exported engines."""
