"""Serving the app in-process for the API tests (`test_app_client`, `test_hostile_server`; the
`served` fixture in conftest.py): one way to start it and to find an endpoint's outputs."""

import contextlib

import torch


@contextlib.contextmanager
def serve(args):
    """Launch the app with command-line `args` in-process (one torch thread: the machine is shared);
    yields a factory of gradio_client clients, all closed with the server afterwards."""
    import gradio_client

    from stabledrag.webapp.args import parse_args
    from stabledrag.webapp.ui import build_demo

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    demo = build_demo(parse_args(args))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None)
    clients = []

    def new_client():
        c = gradio_client.Client(url, verbose=False, download_files=False)
        clients.append(c)
        return c

    try:
        yield new_client
    finally:
        for c in clients:
            c.close()
        demo.close()
        torch.set_num_threads(threads)


def output_index(client, endpoint, label):
    """The position of the output labelled `label` among the outputs of API `endpoint`."""
    returns = client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]["returns"]
    return [r["label"] for r in returns].index(label)
