"""The figures in README.md and docs/ are rendered from docs/data/ by `make docs`: a hand edit of a generated block,
or data changed without re-rendering, fails here."""

from kclocal import docs


def test_generated_blocks_match_their_data():
    assert docs.stale() == []


def test_every_page_has_its_blocks_and_every_block_renders():
    names = {m.group("name") for page in docs.PAGES for m in docs.BLOCK.finditer(page.read_text())}
    assert names == set(docs.BLOCKS)
    for render in docs.BLOCKS.values():
        assert render().strip()  # its data file exists and is complete


def test_a_hand_edited_block_is_caught():
    text = "a\n<!-- BEGIN generated:demo -->\nedited by hand\n<!-- END generated:demo -->\n"
    assert docs.render(text) != text
