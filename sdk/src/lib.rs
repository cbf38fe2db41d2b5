//! Vivified plugin SDK (work in progress, issue 4).
