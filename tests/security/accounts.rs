//! Accounts and password back-off (issue 16, items 1 and 3).
