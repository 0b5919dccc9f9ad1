"""One test module per IntGraph op kind (``test_<kind>.py``) and the helpers they share."""
