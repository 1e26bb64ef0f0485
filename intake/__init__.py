"""Mail in: mailbox sources, parsing, classification and the per-message pipeline."""
