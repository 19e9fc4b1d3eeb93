"""Reader studies: blinded real-vs-synthetic reading, its sessions and their analysis."""
