"""Generated page placeholder (replaced by the docs generator work)."""

import mkdocs_gen_files

with mkdocs_gen_files.open("api/error-codes.md", "w") as page:
    page.write("# errors\n\nTo be generated.\n")
