//! Strict input, CSRF and log and file hygiene (issue 16, items 4, 6 and 7).
