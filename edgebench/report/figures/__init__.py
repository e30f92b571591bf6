"""Study-specific tables and figures (a study's ``extra: module:function`` hook): what a study's runs cannot log."""
