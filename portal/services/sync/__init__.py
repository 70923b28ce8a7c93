"""The sync engine and its pure building blocks (``merge``: the three-way merge of one linked record)."""
