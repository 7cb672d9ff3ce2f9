"""The four lifecycle stages, one module each; core/pipeline.py chains them."""
