"""Icons, default configs, small default weights and demo data references."""
