"""Named dataset presets: domain names and class lists of the standard DA benchmarks.

A preset only checks a dataset on disk (domains exist, class folders are the expected ones);
any ``root/<domain>/<class>/<image>`` folder works without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class DatasetPreset:
    """A benchmark's domains and classes (None: any class folders)."""

    name: str
    domains: tuple[str, ...]
    classes: Optional[tuple[str, ...]]


_OFFICE31 = (
    "back_pack bike bike_helmet bookcase bottle calculator desk_chair desk_lamp desktop_computer file_cabinet "
    "headphones keyboard laptop_computer letter_tray mobile_phone monitor mouse mug paper_notebook pen phone "
    "printer projector punchers ring_binder ruler scissors speaker stapler tape_dispenser trash_can"
).split()
_OFFICE_HOME = (
    "Alarm_Clock Backpack Batteries Bed Bike Bottle Bucket Calculator Calendar Candles Chair Clipboards Computer "
    "Couch Curtains Desk_Lamp Drill Eraser Exit_Sign Fan File_Cabinet Flipflops Flowers Folder Fork Glasses Hammer "
    "Helmet Kettle Keyboard Knives Lamp_Shade Laptop Marker Monitor Mop Mouse Mug Notebook Oven Pan Paper_Clip Pen "
    "Pencil Postit_Notes Printer Push_Pin Radio Refrigerator Ruler Scissors Screwdriver Shelf Sink Sneakers Soda "
    "Speaker Spoon TV Table Telephone ToothBrush Toys Trash_Can Webcam"
).split()

PRESETS: dict[str, DatasetPreset] = {
    p.name: p
    for p in (
        DatasetPreset("office31", ("amazon", "dslr", "webcam"), tuple(_OFFICE31)),
        DatasetPreset(
            "office_caltech10",
            ("amazon", "dslr", "webcam", "caltech"),
            ("backpack", "bike", "calculator", "headphones", "keyboard", "laptop", "monitor", "mouse", "mug", "projector"),
        ),
        DatasetPreset("office_home", ("Art", "Clipart", "Product", "Real_World"), tuple(_OFFICE_HOME)),
        # ImageCLEF-DA ships class folders named 0..11 in some copies and by name in others.
        DatasetPreset("imageclef", ("c", "i", "p"), None),
    )
}
