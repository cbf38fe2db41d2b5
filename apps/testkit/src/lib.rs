//! Vivified test kit (work in progress, issue 4).
