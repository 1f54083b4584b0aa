//! Tests over the built-in blueprints.
