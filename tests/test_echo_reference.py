"""The echo reference's PipeWire stream: it records a sink (the "Echo-cancelled speaker"), not a source."""
from edge.devices import pipewire


def test_the_reference_stream_asks_pipewire_alsa_for_the_sink_monitor_under_its_own_name():
    alone = pipewire.side_stream_environment(None, "reference", capture_sink=True)
    assert 'node.name = "percepnet-edge.reference"' in alone and alone.endswith("stream.capture.sink = true }")
    combined = pipewire.side_stream_environment(pipewire.environment("kitchen"), "reference", capture_sink=True)
    # the later node.name and link group win: its own stream, not part of the microphone's filter
    assert combined.index('node.name = "percepnet-edge.kitchen.reference"') > combined.index(
        'node.name = "percepnet-edge.kitchen"')
    assert 'node.link-group = "percepnet-edge.kitchen.reference"' in combined and combined.count("{") == 1
    forward = pipewire.side_stream_environment(pipewire.environment(), "forward")
    assert 'node.name = "percepnet-edge.forward"' in forward and "capture.sink" not in forward
    # neither is moved to another node when its own goes: the forwarded copy could land in the speaker sink itself
    assert all("node.dont-reconnect = true" in env for env in (alone, combined, forward))
