"""Mail out: rendering notices, the transactional outbox, and delivery by SMTP or Maildir."""
