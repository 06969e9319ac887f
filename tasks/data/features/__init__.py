"""Typed table columns: what each column is (numeric, category, binary, datetime, drop), how its missing cells are
filled and how it is encoded, fitted on train only and saved as JSON that travels with the model."""
