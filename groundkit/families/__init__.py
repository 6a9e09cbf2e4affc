"""Model families: one folder each, holding everything about one way of publishing a checkpoint
(loading, key conversion, capture hook, required files, options, tiny test builder). A family imports
only ``groundkit.core`` and the shared text encoders of ``groundkit.families.text``."""
