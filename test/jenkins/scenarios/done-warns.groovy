// cinodeSession.done in post { cleanup { } } with the server gone: a warning, not a failure.
cinodeSession.done(timeout: '1s')
'cleaned up'
