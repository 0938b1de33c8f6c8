import io.cinode.jenkins.CinodeCli

/**
 * cinodeSession.open(), .done() and .extend(lifetime: ...): the session of a build, for Declarative
 * pipelines that open it in one stage and end it in post { cleanup { } }.
 * See cinodeSession.txt and docs/jenkins.md.
 */

/** Opens the build's session (or, by alias, returns the one already open); returns its ssid. */
String open(Map args = [:]) {
    String step = 'cinodeSession.open'
    CinodeCli cli = CinodeCli.forStep(this, step, args)
    String alias = CinodeCli.aliasOf(this, step, args)
    String ssid = cli.openSession(alias, args.lifetime, args.timeout)
    echo("${step}: session ${alias} is ${ssid}")
    return ssid
}

/**
 * Ends the session; its nodes go to reclaim. Fine when it was already done. A failure only warns
 * (the build's result stays what it was), unless failOnError: true.
 */
void done(Map args = [:]) {
    String step = 'cinodeSession.done'
    CinodeCli cli = CinodeCli.forStep(this, step, args)
    String alias = CinodeCli.aliasOf(this, step, args)
    def timeout = args.timeout ?: '2m'
    if (args.failOnError) {
        cli.endSession(alias, timeout)
    } else {
        cli.endSessionOrWarn(alias, timeout)
    }
}

/** Makes the session expire `lifetime` from now (capped by the project's maximum). */
void extend(Map args = [:]) {
    String step = 'cinodeSession.extend'
    CinodeCli cli = CinodeCli.forStep(this, step, args)
    String alias = CinodeCli.aliasOf(this, step, args)
    if (!args.lifetime) error("${step}: give lifetime: e.g. lifetime: '2h' (or 'never', if the project may)")
    cli.extendSession(alias, args.lifetime.toString(), args.timeout)
}
