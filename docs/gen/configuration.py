"""Generated page placeholder (replaced by the docs generator work)."""

import mkdocs_gen_files

with mkdocs_gen_files.open("operations/configuration.md", "w") as page:
    page.write("# configuration\n\nTo be generated.\n")
