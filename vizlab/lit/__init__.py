"""LightningModules and DataModules: the explain loop and classifier training."""
