"""The emulated thermodynamic co-processor: analog physics core and the device daemon."""
