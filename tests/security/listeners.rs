//! Limits on every listener (issue 16, item 2) and System Manager access control (item 5).
