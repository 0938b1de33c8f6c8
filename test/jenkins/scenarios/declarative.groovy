// The steps of a Declarative pipeline: open in one stage, nodes in another, extend, and end in
// post { cleanup { } }; every step names the same session (from BUILD_TAG) without passing it.
def ssid = cinodeSession.open(lifetime: '1h')
def first = cinodeNodes(count: 1, ver: '7')
def second = cinodeNodes(count: 2, ver: '9-stream')
cinodeSession.extend(lifetime: '2h')
report.body = [ssid: ssid, hosts: first + second]
cinodeSession.done()
cinodeSession.done()
'declared'
