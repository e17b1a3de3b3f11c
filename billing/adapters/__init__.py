"""The edge: MongoDB documents, queries and errors (Stripe joins here later)."""
