"""The tablet's camera input in real Chromium: a photo chosen in the file input is uploaded with
the step's form, and the verifier's page shows it (loaded under the site's CSP)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from .conftest import Site
from .photo_images import vial_photo
from .test_e2e_dose import Tablet, browser, server
from .test_photos_web import LOT, _signed_photos

__all__ = ["browser", "server"]  # fixtures, used by name


def test_photo_taken_on_the_tablet_reaches_the_verifier(
    sqlite_site: Site, server: str, browser: Any, tmp_path: Path
) -> None:
    site = sqlite_site
    view = site.walk_to("reconstitution")
    cid = view.case.case_id
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(vial_photo(LOT, (site.clock.now() + timedelta(days=200)).date()))
    tab = Tablet(browser, server, tmp_path, (1024, 1366))
    tab.login("t.mensah")
    from workflow.dev.walk import values_for

    tab.page.goto(f"{server}/cases/{cid}?step=reconstitution")
    camera = tab.page.locator("input[name=photo_vials]")
    assert camera.get_attribute("capture") == "environment"
    assert camera.get_attribute("accept") == "image/*"
    tab.fill_step(values_for(view.case, "reconstitution", site.clock.now()))
    camera.set_input_files(str(photo))
    tab.sign()
    # Back on the case, which confirms the signature just made (?signed=<event>).
    tab.page.wait_for_url(re.compile(rf"/cases/{cid}(\?signed=\d+)?$"))
    ref = _signed_photos(site, cid, "reconstitution")["vials"]
    assert ref.sha256 == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert ref.barcode_agrees is True

    view = site.walk_to("pharmacy_verification", site.bedside.load(cid))
    tab.login("p.lindqvist")
    tab.page.goto(f"{server}/cases/{cid}?step=pharmacy_verification")
    img = tab.page.locator("figure.photo img").first
    img.scroll_into_view_if_needed()
    tab.page.wait_for_function("() => document.querySelector('figure.photo img').complete")
    assert img.evaluate("e => e.naturalWidth") == 1200
    tab.shot("verifier-photos")
