"""The echo reference's PipeWire stream: it records a sink (the "Echo-cancelled speaker"), not a source."""
from edge.devices import pipewire


def test_the_reference_stream_asks_pipewire_alsa_for_the_sink_monitor():
    assert pipewire.monitor_environment(None) == "{  stream.capture.sink = true }"
    ours = pipewire.environment("kitchen")
    combined = pipewire.monitor_environment(ours)
    assert combined.startswith("{ node.name = \"percepnet-edge.kitchen\"")
    assert combined.endswith("stream.capture.sink = true }") and combined.count("{") == 1
