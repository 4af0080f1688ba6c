"""Built-in presets: field declarations as data (``<name>.yaml``), read by
:mod:`linkage.standardise.presets`."""
