"""`python -m function batch`: bulk inference over a bucket prefix or a folder, exactly once and resumable, with the
answers `POST /predict` gives (see docs/batch.md).

  plan.py     list the input once, pin each item (uri, generation, size), group into chunks, write the plan create-only
  shares.py   which chunks a Cloud Run Job task takes (j mod COUNT = INDEX), and which of them are still to do
  reader.py   the input: a gs:// prefix or a local folder, listed and read at a pinned generation
  writer.py   the output: objects created only if absent (GCS if_generation_match=0, local os.link)
  runner.py   the loop: read the next chunk while this one is inferred by the serving core, write it as one object
  command.py  the arguments (the same parameters, ranges and errors as /predict) and `batch status`
"""
