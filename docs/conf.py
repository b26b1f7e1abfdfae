# Sphinx configuration of the hde_kit documentation site (scripts/build_docs.py copies it beside the processed notebooks).
project = 'hde_kit'
author = 'hde_kit developers'
copyright = '2026 onwards, hde_kit developers'
extensions = ['myst_nb', 'sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'sphinx.ext.viewcode']
nb_execution_mode = 'off'                 # render the outputs stored in the notebooks; never execute
nb_output_stderr = 'remove'               # progress bars and warnings are noise on a web page
myst_enable_extensions = ['dollarmath', 'colon_fence']
myst_heading_anchors = 3
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_default_options = {'exclude-members': '__init__'}
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type', 'misc.highlighting_failure', 'myst.xref_missing']
html_theme = 'sphinx_book_theme'
html_title = 'hde_kit'
html_theme_options = {'show_toc_level': 2}
exclude_patterns = ['_build', '_html', 'jupyter_execute', '**.ipynb_checkpoints']
