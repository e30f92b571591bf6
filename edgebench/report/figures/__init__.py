"""Study-specific tables and figures: the ``extra: module:function`` hooks of conf/study/*.yaml."""
