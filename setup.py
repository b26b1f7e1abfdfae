"""Packaging from `settings.ini` (nbdev 2's template, without its `pkg_resources` import,
which current setuptools no longer ships)."""
from configparser import ConfigParser
import setuptools

assert setuptools.__version__ >= '36.2'
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()
lic = licenses[cfg['license'].lower()]
min_python = cfg['min_python']
requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    license=lic[0], keywords=cfg['keywords'].split(), author=cfg['author'], author_email=cfg['author_email'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language'].title()]
                + ['Programming Language :: Python :: ' + v for v in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'], project_urls={'Source': cfg['git_url']},
    # configs/ ships inside the package as hde_kit/configs, so an installed kit finds them by name from any directory
    packages=setuptools.find_packages(include=['hde_kit', 'hde_kit.*']) + ['hde_kit.configs'],
    package_dir={'hde_kit.configs': 'configs'}, package_data={'hde_kit.configs': ['*.yaml']}, license_files=['LICENSE'],
    include_package_data=True, install_requires=requirements, extras_require={'dev': dev_requirements},
    python_requires='>=' + min_python, long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown', zip_safe=False,
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
