"""moto's server behind waitress, which keeps HTTP/1.1 connections open between requests.

moto_server runs on werkzeug's development server, which closes every connection after one
response; an AWS SDK client then opens a TCP connection per request, which real AWS endpoints
do not make it do. The CPU benchmarks of the live SQS path use this one so that what they
measure is trailwatch's work per request, not reconnecting. Usage: moto-keepalive.py PORT
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve

serve(
    DomainDispatcherApplication(create_backend_app),
    host="127.0.0.1",
    port=int(sys.argv[1]),
    threads=8,
    _quiet=True,
)
