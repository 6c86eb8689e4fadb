//! End-to-end tests against the real server binaries. Empty until the first host lands.
