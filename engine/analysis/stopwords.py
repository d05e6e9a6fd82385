"""Stop-word lists for the analyzers' Latin-script path (compared after lowercasing, before
stemming, as Lucene does)."""

from __future__ import annotations

#: Lucene's / Elasticsearch's default English stop words (``EnglishAnalyzer``), 33 words.
#: The default: short and safe for technical text.
LUCENE_ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    """
    a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with
    """.split()
)

#: scikit-learn's ``ENGLISH_STOP_WORDS`` (Glasgow IR group list), 318 words. Aggressive:
#: it contains content words such as "system", "fire", "interest", "found", "show".
SKLEARN_ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above across after afterwards again against all almost alone along already also
    although always am among amongst amoungst amount an and another any anyhow anyone anything
    anyway anywhere are around as at back be became because become becomes becoming been before
    beforehand behind being below beside besides between beyond bill both bottom but by call can
    cannot cant co con could couldnt cry de describe detail do done down due during each eg
    eight either eleven else elsewhere empty enough etc even ever every everyone everything
    everywhere except few fifteen fifty fill find fire first five for former formerly forty
    found four from front full further get give go had has hasnt have he hence her here
    hereafter hereby herein hereupon hers herself him himself his how however hundred i ie if in
    inc indeed interest into is it its itself keep last latter latterly least less ltd made many
    may me meanwhile might mill mine more moreover most mostly move much must my myself name
    namely neither never nevertheless next nine no nobody none noone nor not nothing now nowhere
    of off often on once one only onto or other others otherwise our ours ourselves out over own
    part per perhaps please put rather re same see seem seemed seeming seems serious several she
    should show side since sincere six sixty so some somehow someone something sometime
    sometimes somewhere still such system take ten than that the their them themselves then
    thence there thereafter thereby therefore therein thereupon these they thick thin third this
    those though three through throughout thru thus to together too top toward towards twelve
    twenty two un under until up upon us very via was we well were what whatever when whence
    whenever where whereafter whereas whereby wherein whereupon wherever whether which while
    whither who whoever whole whom whose why will with within without would yet you your yours
    yourself yourselves
    """.split()
)

#: Lists a config may name (``stopwords: sklearn``).
NAMED_STOP_WORDS: dict[str, frozenset[str]] = {
    "lucene": LUCENE_ENGLISH_STOP_WORDS,
    "english": LUCENE_ENGLISH_STOP_WORDS,
    "sklearn": SKLEARN_ENGLISH_STOP_WORDS,
}
#: The list a language gets by default. Other languages have none built in: their
#: analyzers keep every word unless the config names a list or gives one.
BUILT_IN_STOP_WORDS: dict[str, frozenset[str]] = {
    "english": LUCENE_ENGLISH_STOP_WORDS,
    "porter": LUCENE_ENGLISH_STOP_WORDS,
}
