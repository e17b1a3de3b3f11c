"""Pure billing rules: money, periods, pricing and invoice states. No I/O, no MongoDB, no Stripe."""
