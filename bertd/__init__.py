"""bertd: a self-hosted daemon that fine-tunes BERT text classifiers on request."""

__version__ = "0.1.0"
