"""The gate: one transaction per traveller, from card on the reader to barrier
open or referral, with the identity service, the kiosk, the officer console
and the audit trail."""
