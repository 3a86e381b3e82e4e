"""Point-in-time features over own and related-party records (see issue: features)."""
