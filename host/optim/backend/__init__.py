"""The device as a backend of the optimizers: what an update may ask of it (``requests``), how
one step's requests become one packet (``packet``), and the rules for signal scales
(``scaling``) and for keeping a drifting chip calibrated (``drift``)."""
