"""Generated page placeholder (replaced by the docs generator work)."""

import mkdocs_gen_files

with mkdocs_gen_files.open("architecture/data-model.md", "w") as page:
    page.write("# data_model\n\nTo be generated.\n")
