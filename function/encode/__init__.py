"""What a prediction becomes besides JSON: the annotated image (Ultralytics' own plot, with the shipped fonts)."""
