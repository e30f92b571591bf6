"""Studies' own tables and figures (a study's ``extra: module:function`` hook), one module per study."""
