"""citypatrol.pipeline.detection: what the models look at, and when.

- `schedule.py`: each detector at the cadence of the fastest rule it feeds, on a grid of stream
  time, with the change gate that skips frames where nothing moved;
- `text_schedule.py`: when a camera's advertising areas are read for printed text;
- `panels.py`: picture panels on an advertising area's plain surface (posters without text);
- `tiling.py`: which tile grid a camera's frames are cut into for far, small vehicles.
"""
